"""Usage reports, summary, cost, trend or detailed, as PDF or Excel.

data.py reads the content from the history; pdf.py and workbook.py lay it out.
"""
