"""arttl: transfer learning for art and cultural-heritage image classification."""

__version__ = "0.1.0"
