"""Texts that describe a rule of the core, said once for every front end.

A leaf module: a front end shows these while it starts (a tool's argument description, a CLI flag's
help), before it loads the core that applies the rule.
"""

from __future__ import annotations

QUERY_HELP = "Part of a file or benefit name; searches every page."
"""What a search matches (`catalog.matches_query`): the tools' `query` argument, the CLI's --query."""
