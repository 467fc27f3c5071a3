"""Multimodal models for the WOAH 2021 fine-grained hateful memes shared task."""

__version__ = "0.1.0"
