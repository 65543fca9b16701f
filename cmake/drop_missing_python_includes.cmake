# Work around the PyPI ROS 2 wheels: their exported *__rosidl_generator_py
# targets list the include dir of the manylinux build container
# (/opt/python/cp311-cp311/include/python3.11), which does not exist here, and
# CMake fails at generate time. At the end of the directory, drop include
# dirs that do not exist from those imported targets. On a normal ROS 2
# install every path exists, so this changes nothing.
function(_parahydra_drop_missing_python_includes)
  get_directory_property(_targets IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    if(_target MATCHES "__rosidl_generator_py$")
      get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
      if(_dirs)
        set(_kept "")
        foreach(_dir IN LISTS _dirs)
          if(EXISTS "${_dir}" OR _dir MATCHES "^\\$<")
            list(APPEND _kept "${_dir}")
          endif()
        endforeach()
        set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
      endif()
    endif()
  endforeach()
endfunction()
cmake_language(DEFER CALL _parahydra_drop_missing_python_includes)
