module gefyra.dev/images/testserver

go 1.24
