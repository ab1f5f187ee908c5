"""The results chapter (``python -m trashnet report``, ``trashnet.report.build``), and the figures and tables the
stage notebooks show (``figures``, ``views``). Importing the package imports none of its modules."""
