"""mlctl: deploy, check, diagnose, restart and roll back Django applications over SSH.

The package is built in layers. A module may import from its own layer and the layers above it
in this list, never from one below (tests/unit/test_layers.py checks it):

  remote     programs that run on the hosts; standard library only, they import no mlctl module
  core       quoting of shell words, the error types, console output, signals
  config     the inventory: schema, merge, validation, the server layout it implies
  commands   pure command builders: settings and facts in, `Cmd` objects out, nothing run
  transport  connections, sessions (the one executor of commands), the journal, the deploy lock
  project    reading the project on this machine: requirements, wheels, settings, the test gate
  tasks      deploy, setup, rollback, check, diag...: each plans its commands and runs them
  cli        the front ends (`mlctl`, `fab`, `inv`) over the one task table

docs/architecture.md follows one deploy through the layers.
"""

__version__ = "0.1.0"
