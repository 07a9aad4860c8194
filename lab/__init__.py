"""The one-machine lab: netns sites with their own OVS, hosts, underlay links, the demo."""
