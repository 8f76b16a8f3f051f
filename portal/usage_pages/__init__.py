"""The portal's usage page."""
