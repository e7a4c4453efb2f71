// The fault suite's own laptop: a network namespace built like the test cluster's (it reaches only
// the API server) but nobody else's, since the suite drops its link. Imported before the e2e
// harness, which reads the laptop's name from KTCTL_E2E_LAPTOP_NS when it loads.

export const FAULTS_LAPTOP = {
  name: "ktctl-faults-laptop",
  hostInterface: "ktctl-fltl0",
  net: "10.207.0",
  chain: "KTCTL-FAULTS-LAPTOP",
};

process.env.KTCTL_E2E_LAPTOP_NS = FAULTS_LAPTOP.name;
