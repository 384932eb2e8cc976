"""Where pictures come from: image files and the shipped samples."""
