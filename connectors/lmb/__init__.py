"""Banner's Luminis Message Broker: the adapter that receives its pushes.

- ``ims``: IMS Enterprise 1.1 XML → ``lmb.messages.ImsMessage`` (defusedxml: no
  entity expansion, no external entities; the only module that imports it).
- ``endpoint``: the aiohttp endpoint LMB POSTs to (credentials, POST only, a
  size limit, the RDI headers, answers that keep LMB sending).
"""
