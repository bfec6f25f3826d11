"""The listening study (the paper's appendix I) as a tool any lab can run with its own listeners.

* :mod:`.loops`: seamless loops (tail crossfaded into head) written as compressed audio;
* :mod:`.bundle`: trials (concept × prompt), each study variant's α stops, the static bundle
  and its server-side manifest;
* :mod:`.plan`: each participant's trial order, drawn method families and sample order;
* :mod:`.ratings`: the submission schema, the durable ratings file and its reader;
* :mod:`.server`: the ASGI app behind ``tada study serve``;
* :mod:`.analysis`: ratings -> tables and figures;
* ``static/``: the rating page (``crossfade.js`` is the reusable Web Audio player).

The server side imports nothing heavy (no torch): :mod:`.server` needs only :mod:`.plan` and
:mod:`.ratings`.
"""
