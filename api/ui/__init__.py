"""The dashboard at /ui/: server-rendered pages over the same store functions as the API."""
