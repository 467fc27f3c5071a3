"""The classifier for callers: the Python API and the HTTP service.

Read api.py first (`MemeClassifier`: images and captions in, scores and label sets out; the
package exports it lazily), then ocr.py (captions read off the pictures), ocr_cache.py (those
captions kept in the feature cache), service.py (FastAPI over the API, `serve.py`) and page.py
(the service's one HTML page).
"""
