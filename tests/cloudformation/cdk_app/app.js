// A CDK app using aws-cdk-lib's App Mesh L2 constructs, deployed by tests/cloudformation/test_cdk.py.
// COLOR_VERSION=2 moves the route's weights and adds a green node, as a second deploy would.
const cdk = require("aws-cdk-lib");
const appmesh = require("aws-cdk-lib/aws-appmesh");

const app = new cdk.App();
const stack = new cdk.Stack(app, "ColorMesh", {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
const second = process.env.COLOR_VERSION === "2";
const mesh = new appmesh.Mesh(stack, "Mesh", {
  meshName: "cdk-color",
  egressFilter: appmesh.MeshFilterType.ALLOW_ALL,
});
const listener = (port) =>
  appmesh.VirtualNodeListener.http({
    port,
    healthCheck: appmesh.HealthCheck.http({
      path: "/ping",
      healthyThreshold: 2,
      unhealthyThreshold: 2,
      interval: cdk.Duration.seconds(5),
      timeout: cdk.Duration.seconds(2),
    }),
    timeout: { idle: cdk.Duration.seconds(10) },
    outlierDetection: {
      baseEjectionDuration: cdk.Duration.seconds(10),
      interval: cdk.Duration.seconds(30),
      maxEjectionPercent: 50,
      maxServerErrors: 5,
    },
  });
const nodes = [
  mesh.addVirtualNode("Blue", {
    virtualNodeName: "blue",
    serviceDiscovery: appmesh.ServiceDiscovery.dns("blue.cdk.local"),
    listeners: [listener(8080)],
  }),
];
if (second) {
  nodes.push(
    mesh.addVirtualNode("Green", {
      virtualNodeName: "green",
      serviceDiscovery: appmesh.ServiceDiscovery.dns("green.cdk.local"),
      listeners: [listener(8080)],
    }),
  );
}
const router = mesh.addVirtualRouter("Router", {
  virtualRouterName: "color-router",
  listeners: [appmesh.VirtualRouterListener.http(8080)],
});
router.addRoute("Route", {
  routeSpec: appmesh.RouteSpec.http({
    weightedTargets: nodes.map((node, index) => ({
      virtualNode: node,
      weight: index === 0 && second ? 3 : 1,
    })),
    retryPolicy: {
      httpRetryEvents: [appmesh.HttpRetryEvent.SERVER_ERROR],
      retryAttempts: 2,
      retryTimeout: cdk.Duration.millis(500),
    },
    timeout: { perRequest: cdk.Duration.seconds(3) },
  }),
});
const service = new appmesh.VirtualService(stack, "Service", {
  virtualServiceName: "color.cdk.local",
  virtualServiceProvider: appmesh.VirtualServiceProvider.virtualRouter(router),
});
const gateway = mesh.addVirtualGateway("Gateway", {
  virtualGatewayName: "ingress",
  listeners: [appmesh.VirtualGatewayListener.http({ port: 9080 })],
});
gateway.addGatewayRoute("ToColor", {
  gatewayRouteName: "to-color",
  routeSpec: appmesh.GatewayRouteSpec.http({ routeTarget: service }),
});
new cdk.CfnOutput(stack, "MeshArn", { value: mesh.meshArn });
