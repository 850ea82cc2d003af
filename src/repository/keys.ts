/**
 * Every key the controller keeps in a store, in one place. Readers outside
 * cnm/ (the embedded DNS) follow these prefixes, so a key changes here or
 * nowhere. A network's records (its record, state, name, endpoints, subnet
 * table) live in the store of its scope: the local store for `local`
 * networks, the cluster store for `global` ones. Sandboxes and the host id
 * are always local.
 */
export const keys = {
  /** Prefix of every network record. */
  networks: 'networks/',
  /** networks/ID → NetworkRecord (JSON). */
  network: (networkId: string) => `networks/${networkId}`,
  /**
   * network-state/ID → NetworkState (JSON): says the network takes
   * endpoints. Endpoint changes compare against it and never write it; it is
   * deleted first when the network's removal begins, which makes them fail.
   */
  networkState: (networkId: string) => `network-state/${networkId}`,
  /** Prefix of one network's address claims. */
  networkAddresses: (networkId: string) => `ipam/addresses/${networkId}/`,
  /** ipam/addresses/NETWORK-ID/ADDRESS → endpoint id: the address (no prefix length) is handed out, once. */
  address: (networkId: string, address: string) => `ipam/addresses/${networkId}/${address}`,
  /** Prefix of one network's endpoint name claims. */
  networkEndpointNames: (networkId: string) => `names/endpoints/${networkId}/`,
  /** names/endpoints/NETWORK-ID/NAME → endpoint id: makes an endpoint name unique within its network. */
  endpointName: (networkId: string, name: string) => `names/endpoints/${networkId}/${name}`,
  /** names/networks/NAME → network id: makes a name unique within its store. */
  networkName: (name: string) => `names/networks/${name}`,
  /** ipam/subnets → SubnetTable (JSON): every subnet in use in the store, checked so that no two overlap. */
  subnets: 'ipam/subnets',
  /** Prefix of every endpoint record, of every network. */
  endpoints: 'endpoints/',
  /** Prefix of one network's endpoint records. */
  networkEndpoints: (networkId: string) => `endpoints/${networkId}/`,
  /** endpoints/NETWORK-ID/ENDPOINT-ID → EndpointRecord (JSON). */
  endpoint: (networkId: string, endpointId: string) => `endpoints/${networkId}/${endpointId}`,
  /** Prefix of every sandbox record. */
  sandboxes: 'sandboxes/',
  /** sandboxes/ID → SandboxRecord (JSON), in the local store. */
  sandbox: (sandboxId: string) => `sandboxes/${sandboxId}`,
  /** Prefix of every sandbox's endpoint index. */
  sandboxIndex: 'sandbox-endpoints/',
  /** Prefix of the endpoints joined to one sandbox, in the local store. */
  sandboxEndpoints: (sandboxId: string) => `sandbox-endpoints/${sandboxId}/`,
  /**
   * sandbox-endpoints/SANDBOX-ID/ENDPOINT-ID → network id, in the local store:
   * an index of the endpoints joined to a sandbox, so a connect does not read
   * every endpoint. Written before an endpoint joins, deleted after it leaves
   * (its network may be in the other store), so it holds every joined
   * endpoint and at times one more: readers check the endpoint's record.
   */
  sandboxEndpoint: (sandboxId: string, endpointId: string) => `sandbox-endpoints/${sandboxId}/${endpointId}`,
  /** names/sandboxes/NAME → sandbox id: makes a sandbox name unique on the host. */
  sandboxName: (name: string) => `names/sandboxes/${name}`,
  /** Prefix, in the cluster store, of every host's claims on local network names. */
  localNames: 'names/local/',
  /** Prefix, in the cluster store, of the claims on one name: the hosts that have a local network of that name. */
  localNameClaims: (name: string) => `names/local/${name}/`,
  /** names/local/NAME/HOST-ID → network id, in the cluster store: this host has a local network NAME. */
  localName: (name: string, hostId: string) => `names/local/${name}/${hostId}`,
  /** Prefix of every service record. */
  services: 'services/',
  /** services/ID → ServiceRecord (JSON), in the store of its networks' scope. */
  service: (serviceId: string) => `services/${serviceId}`,
  /** names/services/NAME → service id: makes a service name unique within its store. */
  serviceName: (name: string) => `names/services/${name}`,
  /** Prefix of the services on one network: removing the network is refused while it holds any. */
  networkServices: (networkId: string) => `network-services/${networkId}/`,
  /**
   * network-services/NETWORK-ID/SERVICE-ID → service id, in the network's
   * store: the service is on the network. Its virtual IP, if any, is an
   * address claim (keys.address) whose value is the service id.
   */
  networkService: (networkId: string, serviceId: string) => `network-services/${networkId}/${serviceId}`,
  /**
   * ports/PROTOCOL/PORT → service id, in the store of the service's scope: the
   * service publishes that port (either mode), so no other service of the
   * store can. Written and deleted with the service.
   */
  publishedPort: (protocol: string, port: number) => `ports/${protocol}/${port}`,
  /** Prefix of the claims on one protocol's ports. */
  protocolPorts: (protocol: string) => `ports/${protocol}/`,
  /** Prefix of the sandboxes holding service rules, in the local store. */
  balancedSandboxes: 'balancer/sandboxes/',
  /**
   * balancer/sandboxes/SANDBOX-ID → sandbox id, in the local store: the
   * sandbox's namespace holds the load balancer's table, so a start finds
   * the tables of services that went while the daemon was down.
   */
  balancedSandbox: (sandboxId: string) => `balancer/sandboxes/${sandboxId}`,
  /** host/id → this host's id among the hosts sharing a cluster store (plain text), in the local store. */
  hostId: 'host/id',
} as const;

/** The id a record key ends with: a network's, an endpoint's or a sandbox's. */
export function recordId(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

/** The name and host of a local-name claim (`names/local/NAME/HOST-ID`); undefined for any other key. */
export function parseLocalNameClaim(key: string): { name: string; hostId: string } | undefined {
  if (!key.startsWith(keys.localNames)) return undefined;
  const [name, hostId] = key.slice(keys.localNames.length).split('/');
  if (name === undefined || hostId === undefined) return undefined;
  return { name, hostId };
}
