"""The endpoint inventory: templates learned from traffic, learned schemas, reports."""
