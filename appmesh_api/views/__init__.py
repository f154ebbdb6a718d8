"""What a person reads about a mesh: shared by the ``appmesh-local`` CLI and the web console.

The CLI reads the endpoint with boto3 (it works against any appmesh-local, local or not); the
console reads the server's state directly. Both hand the same data to the same builders, so
the terminal and the browser never disagree about what a mesh or a trace looks like:

- ``resources``: one mesh's resources, fetched with boto3 or read from the store;
- ``specs``: short words for App Mesh spec fragments (listeners, matches, discovery);
- ``meshtree``, ``tree``: the resource tree, as JSON and drawn with ``├─ └─``;
- ``meshgraph``: the same mesh as columns of boxes and weighted edges, for the console;
- ``traces``, ``waterfall``: trace lists and one trace's segments laid out on a time line;
- ``endpoint``: boto3 clients for the endpoint, and what to say when nothing answers.
"""
