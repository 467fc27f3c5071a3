"""What the model reads: frozen encoder features, cached on disk, or raw inputs.

Read store.py first (the SQLite store many processes share; it keeps OCR's captions too), then
cache.py (encoding each distinct image or caption once and caching it) and inputs.py (the
features, or captions and pixels for an encoder being fine-tuned, for a list of memes).
"""
