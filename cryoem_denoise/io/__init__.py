"""Image files: one front end (:mod:`~cryoem_denoise.io.image_io`) that decides a file's
format and hands back pixels plus a neutral header; MRC (:mod:`~cryoem_denoise.io.mrc`),
TIFF and PNG readers/writers behind it; atomic writes (:mod:`~cryoem_denoise.io.atomic`)."""
