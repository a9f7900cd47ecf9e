{#- The unified event stream: tracker events and logfile page views with the same columns.

    * A log hit counts as a page view when it is a GET of a document (not a static asset)
      that the visitor saw: 2xx, 304, or an error page (404, 410).
    * A log hit that is the same request as a tracker page view (same site, device - the
      keyed hash of IP + user agent -, path+query, the view within -10 s .. +60 s of the
      hit) is superseded: the tracker's richer record is kept, the hit is marked and left
      out of visits. Views and hits are matched one to one, closest pairs first, so two
      quick reloads of a page take the page's two hits.
    * Tracker events sent later than the site's allowed lateness after they happened are
      marked late: counted (web.agg_late_events), not sessionised.
    * Campaign fields come from the page URL's query, per the site's campaign parameters. -#}
{{ config(materialized='view_if_changed') }}

{{ unified_events() }}
