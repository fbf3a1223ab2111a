"""netdsl: describe, compile and train AlexNet-family convolutional networks."""
__version__ = "0.1.0"
