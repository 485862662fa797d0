"""InfyPower-style DC power modules on CAN: `protocol` is the wire and `output` how modules
add up (both sans-I/O), `settings` the config, `module` the driver (`CanPowerModule`)."""
