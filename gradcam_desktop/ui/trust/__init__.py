"""The Trust panel: can I trust this map? (deletion/insertion curves, Average Drop, sanity check)."""
