"""The tasks: each plans its commands and runs them through a session.

`from mlctl.tasks import namespace` is how fabfiles written by earlier versions of `mlctl
init` load the Fabric/Invoke collection; it is looked up only when asked for, so importing a
task never imports the front ends.
"""


def __getattr__(name):
    if name == "namespace":
        from mlctl.cli.invoke import namespace

        return namespace
    raise AttributeError(name)
