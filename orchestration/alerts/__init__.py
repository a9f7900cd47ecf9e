"""Business alerts: KPI rules from ``sites.yml`` evaluated on complete data, their states
(Normal, Pending, Firing, Resolved, NoData, Error), notifications through an outbox, and
their history in the warehouse's ``alerts`` schema. docs/alerts.md explains it for users."""
