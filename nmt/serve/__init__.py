"""The HTTP server over Translator: `nmt serve` (server.py), its routes (app.py), the dynamic
batching of concurrent requests (batcher.py), the limits and settings (limits.py), API keys
(auth.py), the served models (models.py), Prometheus metrics (metrics.py), and the web page
(page.html, page.js).
"""
