"""Where pictures come from: decoding image files (:mod:`.images`) and the sources ``--image``
and the window accept (:mod:`.sources`: a file, a shipped sample's name)."""
