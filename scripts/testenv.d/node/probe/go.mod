module cilvest/testenv/probe

go 1.24
