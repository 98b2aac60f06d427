"""Imagery sources behind one interface."""
