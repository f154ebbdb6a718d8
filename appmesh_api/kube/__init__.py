"""Kubernetes manifests for the App Mesh controller, reconciled into App Mesh resources.

App Mesh ran on EKS through aws-app-mesh-controller-for-k8s: teams wrote ``Mesh``,
``VirtualNode``, ``VirtualService``, ``VirtualRouter``, ``VirtualGateway``,
``GatewayRoute`` and ``BackendGroup`` objects (``appmesh.k8s.aws/v1beta2``) and the
controller turned them into App Mesh API calls. This package does the same against
appmesh-local's own API, so those manifests run unchanged:

``objects``  reads manifests (YAML or JSON, several documents, ``List``) into objects;
``names``    the controller's ``awsName`` defaults and label selectors;
``convert``  a controller spec → an App Mesh API spec (membership, references, renames);
``client``   calls the App Mesh API in process, through the same parsing and
             validation an HTTP request gets;
``controller`` stores the objects and reconciles them in dependency order;
``api``      the HTTP endpoints ``appmesh-local kube`` talks to.
"""
