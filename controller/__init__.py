"""OpenFlow control: config + fabric -> flows on every site's Open vSwitch.

fabric.py       derive each site switch's ports (overcast.fabric) from config, bridge plan, OVSDB
pipeline.py     pure: tables as data, plan_switch() -> groups and flows, diff()
openflow.py     the immutable messages the pipeline emits (no os-ken objects)
fakeoftable.py  a model OpenFlow 1.3 switch: apply messages, ask where a frame goes
app.py          the os-ken shim: connect, read the switch, send the difference, audit
ofencode.py     pure: pipeline messages packed into OpenFlow 1.3 bytes (os-ken is the test oracle)
packetin.py     packet-ins read without os-ken, batched from the receive threads to the app
ofcheck.py      pure: every length in a message a switch sends adds up (before os-ken parses)
ofguard.py      puts ofcheck in front of os-ken's parser; a bad message closes its connection
upstream/       the fix for os-ken itself, as a patch to send upstream
ovsdb.py        idempotent bridges, ports and TLS settings over OVSDB (python-ovs)
cli.py          `overcast controller run | plan`
"""
