"""``un-export``: ONNX graphs of a ``transformer_un`` model (offline norms folded first).

``graphs`` holds the two exported modules, ``census`` the op census, ``exporter`` the steps,
``cli`` the command (also ``python -m un_fairseq.export``). The folder layout is shared with
the translator, ``un_translate.manifest``.
"""
