"""Reading the project on this machine: requirements, wheels, settings, the gate."""
