"""/deposits in Streamlit's old pages/ mode, on a fresh start only: see pages/ui/legacy.py."""

from pages.ui.legacy import hand_over

hand_over()
