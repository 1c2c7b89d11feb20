"""One module per noun of the ``kanade`` CLI; ``kanade.cli.main`` registers each verb and
noun app explicitly, in the order ``kanade --help`` lists them."""
