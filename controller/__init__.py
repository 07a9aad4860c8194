"""OpenFlow control: a pure pipeline (config -> FlowMods), the os-ken shim and OVSDB."""
