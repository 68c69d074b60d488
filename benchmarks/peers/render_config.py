#!/usr/bin/env python3
"""render_config.py TEMPLATE OUT KEY=VALUE...: fill a ${KEY} template; a field left unfilled is an error."""

import sys
from pathlib import Path
from string import Template

template, out, *pairs = sys.argv[1:]
values = dict(p.split("=", 1) for p in pairs)
Path(out).write_text(Template(Path(template).read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
