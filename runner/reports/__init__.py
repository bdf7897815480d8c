"""Reports of a run for people and CI, made from its result document (and its journal).

`junit` (JUnit XML), `html` (one self-contained page), `github` (job summary, annotations,
masks on GitHub Actions); `facts` fills what the result document leaves to the journal.
"""
