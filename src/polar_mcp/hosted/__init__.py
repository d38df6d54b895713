"""`--auth signin`: a hosted connector for a seller's buyers (OAuth 2.1 with an e-mailed code).

Loaded only in that mode: its database drivers are the optional extra `polar-mcp[hosted]`.
`app` assembles the ASGI app, `provider` is the OAuth authorization server, `page` the sign-in
page, `mail` sends codes, `store` keeps the state, `service` holds it all for the app's life.
"""
