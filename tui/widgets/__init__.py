"""Dashboard widgets; each draws one part of a collector snapshot."""
