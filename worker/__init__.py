"""The built-in worker: claims tasks over the GraphQL API and runs them."""
