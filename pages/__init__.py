"""The staff dashboard's pages (Streamlit): one thin module per screen, run by app.py's st.navigation."""
