# The format oracle's command sequences: dmsetup command lines, run once against the guest
# kernel's device-mapper and once against vudm (`vudm` CLI verbs over QMP), and compared
# reply by reply (accepted or refused; every output line after normalising device names).
#
# `== NAME` starts a sequence; the devices it creates are removed after it, whatever
# happened. $D0..$D5 are six 64 MiB disks (the kernel: zero-reading virtio disks named by
# major:minor; vudm: null devices d0..d5). A table's lines are separated by `\n`.
# Refused commands are part of the point: both sides must refuse the same ones.

== linear
create lin --table "0 8192 linear $D0 0"
table lin
status lin
info lin
message lin 0 hello
suspend lin
info lin
status lin
load lin --table "0 4096 linear $D1 2048\n4096 4096 linear $D0 0"
table --inactive lin
info lin
resume lin
table lin
status lin
info lin
remove lin

== linear-refused
create bad1 --table "0 8192 linear $D0"
create bad2 --table "0 8192 linear $D0 x"
create bad3 --table "0 8192 linear $D0 0 extra"
create bad4 --table "0 8192 linear $D0 131000"
create bad5 --table "0 8192 linear $D0 0\n9000 100 linear $D1 0"
create bad6 --table "0 8192 nosuchtarget $D0 0"
create bad7 --table "0 0 linear $D0 0"
create lin --table "0 8192 linear $D0 0"
load lin --table "0 8192 linear $D0"
info lin
resume lin
remove lin

== suspend-resume
create s --table "0 8192 zero"
resume s
suspend s
suspend s
suspend --noflush s
info s
resume s
resume s
info s
load s --table "0 8192 error"
info s
clear s
info s
load s --table "0 8192 error"
suspend --noflush s
resume s
table s
info s
remove s

== resume-implies-suspend
# The kernel's resume of an ACTIVE device with an inactive table suspends it, swaps the
# table in and resumes it (do_resume); vudm does the same (MappedDevice.resume).
create r --table "0 8192 zero"
load r --table "0 8192 error"
resume r
table r
info r
remove r

== striped
create st --table "0 8192 striped 2 128 $D0 0 $D1 0"
table st
status st
message st 0 hello
load st --table "0 12288 striped 3 64 $D0 1024 $D1 0 $D2 8"
suspend st
resume st
table st
status st
remove st

== striped-refused
create b1 --table "0 8192 striped 2 128 $D0 0"
create b2 --table "0 8191 striped 2 128 $D0 0 $D1 0"
create b3 --table "0 8192 striped 2 100 $D0 0 $D1 0"
create b4 --table "0 8192 striped 0 128"
create b5 --table "0 8192 striped 2 4 $D0 0 $D1 0"
create b6 --table "0 8192 striped 2 0 $D0 0 $D1 0"

== error-zero
create e --table "0 8192 error"
create z --table "0 8192 zero"
table e
status e
table z
status z
message e 0 hello
message z 0 hello
create e2 --table "0 8192 error extra"
create z2 --table "0 8192 zero extra"
remove e
remove z

== multipath-basic
create mp --table "0 8192 multipath 0 0 1 1 round-robin 0 2 1 $D0 1 $D1 1"
table mp
status mp
message mp 0 fail_path $D0
status mp
message mp 0 fail_path $D0
message mp 0 reinstate_path $D0
status mp
message mp 0 reinstate_path $D0
message mp 0 queue_if_no_path
table mp
status mp
message mp 0 fail_if_no_path
table mp
message mp 0 nosuchmessage
message mp 0 fail_path
message mp 0 fail_path $D3
info mp
remove mp

== multipath-features
create f1 --table "0 8192 multipath 1 queue_if_no_path 0 1 1 round-robin 0 1 1 $D0 1"
table f1
status f1
create f2 --table "0 8192 multipath 2 no_path_retry 5 0 1 1 round-robin 0 1 1 $D0 1"
table f2
status f2
create f3 --table "0 8192 multipath 2 queue_mode bio 0 1 1 round-robin 0 1 1 $D0 1"
table f3
status f3
create f4 --table "0 8192 multipath 2 pg_init_retries 3 0 1 1 round-robin 0 1 1 $D0 1"
table f4
status f4
create f5 --table "0 8192 multipath 2 pg_init_delay_msecs 100 0 1 1 round-robin 0 1 1 $D0 1"
table f5
create f6 --table "0 8192 multipath 1 retain_attached_hw_handler 0 1 1 round-robin 0 1 1 $D0 1"
table f6
create f7 --table "0 8192 multipath 3 queue_if_no_path queue_mode bio 0 1 1 round-robin 0 1 1 $D0 1"
table f7
status f7
create f8 --table "0 8192 multipath 4 queue_if_no_path no_path_retry 3 queue_mode bio 0 1 1 round-robin 0 1 1 $D0 1"
table f8
create f9 --table "0 8192 multipath 2 no_path_retry queue 0 1 1 round-robin 0 1 1 $D0 1"
table f9
create f10 --table "0 8192 multipath 2 no_path_retry fail 0 1 1 round-robin 0 1 1 $D0 1"
table f10

== multipath-refused
create m1 --table "0 8192 multipath 1 bogus_feature 0 1 1 round-robin 0 1 1 $D0 1"
create m2 --table "0 8192 multipath 0 0 1 1 nosuchselector 0 1 1 $D0 1"
create m3 --table "0 8192 multipath 0 0 1 2 round-robin 0 1 1 $D0 1"
create m4 --table "0 8192 multipath 0 0 2 1 round-robin 0 1 1 $D0 1"
create m5 --table "0 8192 multipath 0 0 1 1 round-robin 0 1 1 $D0"
create m6 --table "0 8192 multipath 2 queue_mode nonsense 0 1 1 round-robin 0 1 1 $D0 1"
create m7 --table "0 8192 multipath 0 1 emc 1 1 round-robin 0 1 1 $D0 1"
create m8 --table "0 8192 multipath 0 0 1 1 round-robin 0 0 1"
create m9 --table "0 8192 multipath 0 0 0 0"
table m9
status m9
remove m9
create m10 --table "0 4096 multipath 0 0 1 1 round-robin 0 1 1 $D0 1\n4096 4096 multipath 0 0 1 1 round-robin 0 1 1 $D1 1"
table m10

== multipath-selectors
create rr --table "0 8192 multipath 0 0 1 1 round-robin 0 2 1 $D0 1000 $D1 7"
table rr
status rr
create rr0 --table "0 8192 multipath 0 0 1 1 round-robin 0 2 0 $D0 $D1"
table rr0
status rr0
create ql --table "0 8192 multipath 0 0 1 1 queue-length 0 2 1 $D0 1 $D1 5"
table ql
status ql
create st --table "0 8192 multipath 0 0 1 1 service-time 0 2 2 $D0 1 10 $D1 2 20"
table st
status st
create st1 --table "0 8192 multipath 0 0 1 1 service-time 0 2 1 $D0 3 $D1 4"
table st1
status st1
create bad1 --table "0 8192 multipath 0 0 1 1 round-robin 0 1 1 $D0 0"
create bad2 --table "0 8192 multipath 0 0 1 1 round-robin 0 1 2 $D0 1 2"
create bad3 --table "0 8192 multipath 0 0 1 1 service-time 0 1 2 $D0 1 101"
create bad4 --table "0 8192 multipath 0 0 1 1 queue-length 0 1 1 $D0 0"
create bad5 --table "0 8192 multipath 0 0 1 1 round-robin 1 x 1 1 $D0 1"

== multipath-groups
create mg --table "0 8192 multipath 1 queue_if_no_path 0 2 1 round-robin 0 2 1 $D0 1 $D1 1 round-robin 0 1 1 $D2 1"
table mg
status mg
message mg 0 switch_group 2
status mg
message mg 0 disable_group 1
status mg
message mg 0 enable_group 1
status mg
message mg 0 switch_group 3
message mg 0 switch_group 0
message mg 0 disable_group 9
message mg 0 switch_group x
message mg 0 fail_path $D2
status mg
message mg 0 fail_path $D0
message mg 0 fail_path $D1
status mg
message mg 0 reinstate_path $D1
status mg
suspend mg
message mg 0 fail_path $D1
message mg 0 queue_if_no_path
status mg
resume mg
load mg --table "0 8192 multipath 0 0 2 2 round-robin 0 1 1 $D0 1 round-robin 0 1 1 $D1 1"
table --inactive mg
suspend mg
resume mg
table mg
status mg
info mg
remove mg

== mirror
create mc --table "0 8192 mirror core 2 1024 nosync 2 $D0 0 $D1 0"
table mc
status mc
message mc 0 hello
create mh --table "0 8192 mirror core 2 1024 nosync 2 $D0 0 $D1 0 1 handle_errors"
table mh
status mh
create mk --table "0 8192 mirror core 2 1024 nosync 2 $D0 0 $D1 0 2 handle_errors keep_log"
table mk
status mk
create m3 --table "0 8192 mirror core 2 512 nosync 3 $D0 0 $D1 0 $D2 0"
table m3
status m3
create md --table "0 8192 mirror disk 3 $D3 1024 nosync 2 $D4 0 $D5 0"
table md
status md
suspend md
resume md
status md

== mirror-refused
create b1 --table "0 8192 mirror core 1 1024 1 $D0 0"
create b2 --table "0 8192 mirror core 1 1000 2 $D0 0 $D1 0"
create b3 --table "0 8192 mirror nolog 1 1024 2 $D0 0 $D1 0"
create b4 --table "0 8192 mirror core 1 1024 2 $D0 0 $D1 0 1 bogus"
create b5 --table "0 8192 mirror core 1 1024 2 $D0 0 $D1 0 1 keep_log"
create b6 --table "0 8192 mirror core 2 1024 bogus 2 $D0 0 $D1 0"
create b7 --table "0 8192 mirror disk 1 $D3 2 $D0 0 $D1 0"

== flakey
create f --table "0 8192 flakey $D0 0 60 0"
table f
status f
message f 0 hello
create fd --table "0 8192 flakey $D0 0 0 60 1 drop_writes"
table fd
status fd
create fe --table "0 8192 flakey $D0 0 0 60 1 error_writes"
table fe
create fc --table "0 8192 flakey $D0 0 0 60 5 corrupt_bio_byte 32 w 1 0"
table fc
create fc2 --table "0 8192 flakey $D0 0 0 60 6 corrupt_bio_byte 224 r 0 0 drop_writes"
table fc2
create fr --table "0 8192 flakey $D0 0 0 60 1 error_reads"
table fr

== flakey-refused
create b1 --table "0 8192 flakey $D0 0 60"
create b2 --table "0 8192 flakey $D0 0 0 0"
create b3 --table "0 8192 flakey $D0 0 10 10 1 bogus"
create b4 --table "0 8192 flakey $D0 0 10 10 2 drop_writes error_writes"
create b5 --table "0 8192 flakey $D0 0 10 10 5 corrupt_bio_byte 0 w 1 0"
create b6 --table "0 8192 flakey $D0 0 10 10 5 corrupt_bio_byte 1 x 1 0"

== delay
create d1 --table "0 8192 delay $D0 0 100"
table d1
status d1
message d1 0 hello
create d2 --table "0 8192 delay $D0 0 10 $D1 8 20"
table d2
status d2
create d3 --table "0 8192 delay $D0 0 10 $D1 8 20 $D2 16 30"
table d3
status d3
suspend d1
status d1
resume d1
create b1 --table "0 8192 delay $D0 0"
create b2 --table "0 8192 delay $D0 0 x"
create b3 --table "0 8192 delay $D0 0 10 $D1 8"

== dust
create du --table "0 8192 dust $D0 0 512"
table du
status du
message du 0 addbadblock 60
message du 0 addbadblock 60
message du 0 addbadblock 67
message du 0 queryblock 60
message du 0 queryblock 61
message du 0 countbadblocks
message du 0 listbadblocks
message du 0 removebadblock 60
message du 0 removebadblock 60
message du 0 countbadblocks
message du 0 enable
status du
message du 0 quiet
status du
message du 0 quiet
status du
message du 0 disable
status du
message du 0 clearbadblocks
message du 0 clearbadblocks
message du 0 countbadblocks
message du 0 addbadblock 999999
message du 0 addbadblock x
message du 0 bogus
message du 0 addbadblock
message du 0 addbadblock 1 2
create du4 --table "0 8192 dust $D1 8 4096"
table du4
status du4
message du4 0 addbadblock 1023
message du4 0 addbadblock 1024
create b1 --table "0 8192 dust $D0 0 500"
create b2 --table "0 8192 dust $D0 0"
create b3 --table "0 8192 dust $D0 0 256"

== stacking-refused
create x --table "0 8192 linear $D0 0"
remove x
remove x
suspend nosuchdev
resume nosuchdev
table nosuchdev
status nosuchdev
message nosuchdev 0 hello
