"""What the dashboard's pages share, one module per job: `nav` (the screens, their URLs and roles), `session` (who is
signed in), `boot` (the cached services, the first start's demo data, the banner), `labels` (values in words, through
services.rules.fmt), `actions` (calling the Desk, errors in plain words), `widgets` (selectable tables, dialogs, the
period picker, the extras form), `sync` (freshness, Sync now, the audit check), `charts` (the room timeline),
`history` (a booking's joined timeline) and `legacy` (Streamlit's old pages/ mode).

The modules app.py imports before st.navigation (nav, session, boot) import nothing heavy at the top: pandas, altair
and the database layer load inside the functions that need them, so the first screen comes up fast.
"""
