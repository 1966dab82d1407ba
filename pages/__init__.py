"""The staff dashboard's screens (Streamlit), run by app.py's st.navigation: one package per job (frontdesk,
reconcile, finance, admin) with a thin script per screen, and ui/ for what they share. The pages/<url>.py files are
stand-ins for Streamlit's old pages/ mode (ui/legacy.py). Pages read through services' read models and change
nothing themselves: every write goes through services.authz.Desk (import-linter's `pages-read-only` contract)."""
