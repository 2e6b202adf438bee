"""``python -m cryoem_denoise`` runs the command-line interface."""
from cryoem_denoise.cli import main

if __name__ == "__main__":
    main()
