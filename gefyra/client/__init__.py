"""What runs on the developer's machine: `up` and `down`, the cluster side's install, `run`,
`bridge` and `unbridge`, `check`, the choice of the tunnel's endpoint, and the session object
behind :class:`gefyra.Gefyra`."""
