"""Documents for knowledge bases: what kind a file is (detect), its text with pages and
headings (extract), and the passages search reads (chunking). Pure functions over bytes:
no storage, no database."""
