"""The desk's pages, one module per screen: sign-in, queue, drafts (review), reports, admin."""
