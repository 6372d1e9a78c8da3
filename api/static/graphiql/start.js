// GraphiQL on jobledger's API, from the files served beside this one (no CDN).
//
// The page is served at the API's own URL (/graphql), so queries go to the page's URL and
// subscriptions to the same URL over a websocket. A browser signed in on the dashboard
// sends its session cookie with both (same origin); anyone else puts a token in the
// Headers tab: {"Authorization": "Bearer <token>"}.
"use strict";

(function () {
  const endpoint = new URL(window.location.pathname, window.location.origin);
  const socket = new URL(endpoint.href);
  socket.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";

  const fetcher = GraphiQL.createFetcher({ url: endpoint.href, subscriptionUrl: socket.href });

  const DEFAULT_QUERY = `# jobledger's GraphQL API
#
# Ctrl-Enter runs the query, Ctrl-Space completes,
# and Docs (the book, top left) browses the schema.
#
# Signed in on the dashboard (/), this page runs as
# you. Otherwise put a token in the Headers tab:
#   {"Authorization": "Bearer <token>"}
# (\`jobledger token create\` makes one).

{
  queues {
    totalCount
    nodes { code status priority }
  }
}
`;

  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: DEFAULT_QUERY,
      isHeadersEditorEnabled: true,
      // A bearer token typed in the Headers tab stays in this tab's memory, not in localStorage.
      shouldPersistHeaders: false,
    }),
  );
})();
