"""Pure command builders: functions that return `Cmd` objects and never run anything."""
