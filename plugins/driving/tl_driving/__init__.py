"""tl-driving: 2D object detection for driving scenes."""
