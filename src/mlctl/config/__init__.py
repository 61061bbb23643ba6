"""The inventory: schema, merge, validation and the layout it implies."""
