"""Where pictures come from: decoding image files (:mod:`.images`), the sources ``--image``
and the window accept (:mod:`.sources`: a file, a shipped sample's name), and live frames from
a camera or a video file (:mod:`.live`)."""
