"""Recipients' rules: the pre-send policy and its inputs (consent, suppression lists, quiet
hours, frequency caps), STOP/START/HELP keywords and unsubscribe links. Nothing here sends.
"""
